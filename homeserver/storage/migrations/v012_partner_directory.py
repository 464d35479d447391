"""The shared partner directory: reserved for organization profiles and their verification."""


def statements(d: dict[str, str]) -> list[str]:
    return []
