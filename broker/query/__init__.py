"""Query languages of the embedded broker: each compiles to a predicate over ENF entities."""
