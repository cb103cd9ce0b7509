"""Federation (clauses 4.3.6, 5.9-5.12, Annex D): context source registrations, their subscriptions,
and the forwarding of entity operations to registered context sources."""
