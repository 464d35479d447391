"""Accounts: registration, login, tokens, devices, profiles and user-interactive auth."""
