"""The local services of one machine (Prefect server, MLflow server, deployment runner): where
they live and how processes find them (:mod:`services.settings`), and starting, stopping and
inspecting them (:mod:`services.supervisor`, ``python -m services up|down|status|env``).

Standard library only: the flows read the settings, the Makefile drives the supervisor.
"""
