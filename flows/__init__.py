"""Prefect flows: short chains over the steps in tasks/."""
