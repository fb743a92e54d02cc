"""The bias/variance diagnosis report: interval math (stats), the rule (diagnosis), remedies and
range edges (remedies), learning curve (curves), figures, rendering, and MLflow publishing."""
