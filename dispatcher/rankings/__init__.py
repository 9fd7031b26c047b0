"""Rankings: the ledger of match results, standings with their tie-breakers, snapshots, announcements."""
