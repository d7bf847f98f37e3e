"""Fuzz tests (hypothesis) of what hostile input reaches: the event decoder and the event rules,
the condition language, and the definition loader (issue 7, "Hostile input")."""
