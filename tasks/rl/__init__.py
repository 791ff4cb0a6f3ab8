"""The reinforcement-learning family: environments, scenario sets, rollouts, evaluation."""
