"""Monitoring: what ``prometheus_exporter.py`` measures and serves to Prometheus.

settings (MonitorSettings), drift (PSI against a baseline), reference (the serving
model's training data, followed through the registry), collector (the metric families
read at each scrape) and exporter (serving them over HTTP until a signal).
"""
