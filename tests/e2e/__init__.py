"""Whole journeys: the README's demo, end to end."""
