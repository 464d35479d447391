"""Organizations and partners: reserved for partnerships and the partner directory."""


def statements(d: dict[str, str]) -> list[str]:
    return []
