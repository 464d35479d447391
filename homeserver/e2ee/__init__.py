"""End-to-end encryption: what the server keeps and relays for clients' crypto.

The server never sees plaintext; it stores and serves what clients publish and
send to each other:

* `device_lists.py` (`DeviceLists`): the stream of device-list changes, which
  users' devices or keys changed, served in /sync's `device_lists` and by
  `GET /keys/changes`, waking the /sync of the users who share a room with them;
* `to_device.py`: messages sent straight to devices (`/sendToDevice`), kept per
  recipient device until its next /sync acknowledges them;
* device keys, one-time keys and cross-signing, and room key backup, each in
  their own module;
* `remote_keys.py`: other servers' users' keys and cached device lists, and
  `edus.py`: the EDUs that carry device lists, cross-signing keys and to-device
  messages between servers.
"""
