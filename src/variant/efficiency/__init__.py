"""Speed, memory and budgets: the per-plan benchmark and the budget planner."""
