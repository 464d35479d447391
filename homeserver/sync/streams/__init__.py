"""The streams of /sync, one provider per stream.

A provider (`StreamProvider` in `base.py`) owns one stream:

* its name in the sync token (`key`, a field of `SyncToken`) and its current
  position (`current_position`; `position_now` when it is known without waiting);
* whether it has moved since a request's token (`moved`); the sync service asks
  nothing else of a stream that has not, so an idle incremental sync touches no
  database;
* its part of the response, with its filter applied: top-level sections
  (`top_level`), and parts of each room's entry (`room_part`, for streams with
  `in_rooms`), which the room events stream asks room by room, rooms computed
  concurrently; what a stream reads once per request goes in `prepare`; `quiet_in`
  says when a room certainly has nothing from the stream, so an incremental sync
  skips the rooms with no new events that every such stream is quiet in;
* its wake-up keys: which waiting /sync requests a change of the stream concerns
  (the users the notifier wakes).

The sync service (`homeserver/sync/service.py`) reads every provider's position
into the token before anything else, then asks the providers that moved, in the
order they are registered in `homeserver/server.py`.

Adding a stream (to-device messages and device lists come with end-to-end
encryption) is one new module here with its provider, and one line adding it to
the `streams` the sync service is built with. Their token fields (`to_device`,
`device_lists`) already exist and read 0 until a provider serves them; a stream
beyond those also appends its field to `SyncToken` (older tokens then read it
as 0, so they keep working). Everything after `next_batch` in a response counts
as news that ends a long-poll, so a provider returns {} when it has nothing.
"""

from homeserver.sync.streams.base import StreamProvider, SyncRequest

__all__ = ["StreamProvider", "SyncRequest"]
