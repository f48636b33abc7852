"""Side-by-side benchmarks: our code vs the machine's ceiling vs a naive reference, as ratios."""
