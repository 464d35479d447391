"""Real time: the notifier that wakes waiting /sync requests, sync tokens, and /sync itself."""
