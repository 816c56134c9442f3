"""Gambler's ruin: bet 1 per round until broke or at the goal.

Closed form (p != 1/2, r = (1-p)/p): P(win) = (1 - r**stake) / (1 - r**goal);
for p = 1/2: P(win) = stake/goal and E[rounds] = stake*(goal-stake).
"""

import ancho


class Gambler(ancho.Model):
    """Gambler's ruin: bet 1 per round until broke or at the goal."""

    stake: int = 10
    goal: int = 20
    p: float = 0.5

    def sequence(self, rng):
        x, rounds = self.stake, 0
        while 0 < x < self.goal:
            x += 1 if rng.random() < self.p else -1
            rounds += 1
        return {"won": x >= self.goal, "rounds": rounds}

    @ancho.summary
    def median_rounds_when_won(self, results):
        return float(results.loc[results.won, "rounds"].median())
