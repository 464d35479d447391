"""The media repository (the spec's "Content repository"): uploads, downloads,
thumbnails, the cache of other servers' media, retention.

- `repository.MediaRepository`: the service (local files, remote cache, thumbnails);
  `repository.RemoteMedia`: what the federation side implements to fetch remote media;
- `thumbnails`: choosing and making thumbnails (Pillow, in threads);
- `storage_provider`: where the bytes live (`LocalFilesystemProvider` under
  ``<data_dir>/media/``);
- `headers`: the headers media is served with.
"""
