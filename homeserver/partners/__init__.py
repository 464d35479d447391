"""Organizations and their partners: partnerships, the federation policy that follows
from them, and the shared partner directory where organizations find each other."""
