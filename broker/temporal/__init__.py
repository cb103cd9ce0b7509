"""The embedded temporal store: every attribute instance ever written, per tenant, in the broker's database.

    model.py      rows (one attribute instance at one time), time parsing, rows from a change record
    storage.py    HistoryStorage, the interface
    sqlite.py     on the SQLite file of the store (its own connection, WAL)
    postgres.py   on the PostgreSQL schema of the store (its own pool), BRIN on time
    recorder.py   HistoryRecorder: follows the store's change log into the history
    runtime.py    `open_history(store)` next to a broker Store, start/stop in the broker's lifespan, log trim
"""
