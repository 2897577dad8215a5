"""The verdict: the held-out check, chance and noise, general ability, and hpo judge."""
