"""Database plumbing the broker and the agents share (neither imports the other).

    urls.py       DatabaseUrl and parse_database_url: the one reading of `sqlite:` and `postgresql:` URLs
    backends.py   Backends: implementations registered by database kind, chosen without isinstance checks
"""
