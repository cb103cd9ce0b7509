"""Database plumbing the broker and the agents share (neither imports the other).

    urls.py           DatabaseUrl and parse_database_url: the one reading of `sqlite:` and `postgresql:` URLs
    database.py       one backend object per URL: a SQLite file's one writer thread, a PostgreSQL schema's one pool
    migrate.py        Schema and the one migration runner the backends run at open
    sqlite_thread.py  one SQLite connection served by one thread
    backends.py       Backends: implementations registered by database kind, chosen without isinstance checks
"""
