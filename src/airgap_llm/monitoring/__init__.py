"""Monitoring from the bundle: Prometheus, node exporter and the GPU textfile collector, laid out from the plan.

- ``settings``: the monitoring role's variables, checked (every bad value named with where it came from);
- ``scrape``: the Prometheus configuration (every engine's /metrics, node exporter on every host) and
  the web configuration (basic auth with a bcrypt hash of the generated credential);
- ``rules``: the alert rules, thresholds from the inventory;
- ``files``: every file the monitoring role writes on a host, as ``airgap_llm.host_files.HostFile``;
- ``metrics``: reading vLLM's and the GPU exporter's Prometheus text for ``airgap-llm status``.
"""
