"""Push rules: `defaults` (the spec's predefined rules and a user's merged ruleset),
`glob` (the pattern matcher), `evaluator` (conditions and evaluation, pure) and
`service` (storing and serving rulesets)."""
