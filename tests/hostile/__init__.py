"""Hostile media and hard stops (issue 5): corpus, fuzzing, fault injection, fsck."""
