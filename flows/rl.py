"""The reinforcement-learning family's Prefect flow."""

from trainyard.flows.family import family_flow
from trainyard.tasks.rl.family import RL

rl_flow = family_flow(RL)
