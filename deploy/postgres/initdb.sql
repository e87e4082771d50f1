-- Run once by the postgres image, on first start with an empty data volume
-- (/docker-entrypoint-initdb.d/), as POSTGRES_USER in POSTGRES_DB (mlflow).
-- The prediction log gets a database of its own, apart from MLflow's tables:
-- PREDICTION_LOG_URI=postgresql://USER:PASSWORD@postgres:5432/predictions
CREATE DATABASE predictions;
