"""The test suite: unit tests beside integration tests against real PostgreSQL, Mosquitto, SQLite and HTTP sockets (see README, "Tests and the services they need")."""
