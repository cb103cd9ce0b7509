"""The embedded broker's services: entity operations, queries and discovery over a Store, on ENF."""
