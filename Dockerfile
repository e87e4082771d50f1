# One image for every Python part of the team deployment (docker-compose profile
# `team`): the API (the default command), the trainer, the exporter, and the MLflow
# tracking server, since mlflow and psycopg are in requirements.txt.
#
#   docker build -t penguins .
#   docker run -p 5000:5000 -e MLFLOW_TRACKING_URI=http://HOST:5001 \
#       -e PREDICTION_LOG_URI=postgresql://USER:PASSWORD@HOST/predictions penguins
#
# The code is owned by root and read-only to the user the processes run as: stores
# and logs live in services addressed by URI (or in a mounted volume), not in /app.
FROM python:3.11.13-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Requirements first: the layer of installed packages is rebuilt only when they change.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

# A user of its own with no login. /mlartifacts is the MLflow server's artifact
# store: a named volume mounted there starts with this folder's owner.
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin penguins \
    && mkdir /mlartifacts \
    && chown penguins:penguins /mlartifacts

# Only what the scripts need (.dockerignore admits nothing else).
COPY penguins/ penguins/
COPY data/ data/
COPY modelling.py ml_serving.py prometheus_exporter.py inference.py ./
# Compiled now: the user cannot write __pycache__ into /app at run time.
RUN python -m compileall -q penguins modelling.py ml_serving.py prometheus_exporter.py inference.py

USER penguins

EXPOSE 5000
# /health is 200 while the API can predict, 503 (urlopen raises) while it cannot.
# No curl in the slim image: Python's own urllib asks. Compose gives the other
# services a check of their own.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]

CMD ["python", "ml_serving.py", "--host", "0.0.0.0"]
