"""The text family's Prefect flow."""

from trainyard.flows.family import family_flow
from trainyard.tasks.text.family import TEXT

text_flow = family_flow(TEXT)
