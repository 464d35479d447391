"""The homeserver's side of federation: trust in other servers' keys, and the
services the inbound server-server routes call."""
