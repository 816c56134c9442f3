"""An M/M/1 queue: customers arrive at rate lam, one server serves at rate mu.

Arrivals and service times come from their own named substreams
(``ancho.stream(rng, "arrivals")``, ``"service"``), so two scenarios that
differ only in ``mu`` see the same arrivals, customer by customer: a study
over ``lam`` or ``mu`` on common random numbers stays aligned however many
draws each scenario makes. Closed form for comparison: the long-run mean
wait in the queue is lam / (mu · (mu − lam)) when lam < mu.
"""

import ancho


class Queue(ancho.Model):
    """Mean waiting time in queue of the first ``customers`` customers of an M/M/1 queue (Lindley's recursion)."""

    lam: float = 0.8
    mu: float = 1.0
    customers: int = 1000

    def sequence(self, rng):
        gaps = ancho.stream(rng, "arrivals").exponential(1 / self.lam, self.customers)
        service = ancho.stream(rng, "service").exponential(1 / self.mu, self.customers)
        wait, total = 0.0, 0.0
        for k in range(1, self.customers):
            wait = max(0.0, wait + service[k - 1] - gaps[k])
            total += wait
        return {"wait": total / self.customers}
