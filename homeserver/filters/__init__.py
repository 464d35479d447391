"""Filters: `event_filter` matches events (the spec's RoomEventFilter, used by
/messages, /context and each /sync section); `sync_filter` is a whole filter
definition as /sync applies it; `service` stores users' filters and loads the one
a /sync request names."""
