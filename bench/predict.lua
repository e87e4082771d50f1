-- wrk script: POST one Adelie to /predict.
-- wrk -t2 -c8 -d10s --latency -s bench/predict.lua http://127.0.0.1:5000/predict
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"bill_length_mm": 39.1, "bill_depth_mm": 18.7, "flipper_length_mm": 181, "body_mass_g": 3750, "island_encoded": 0, "sex_encoded": 1}'
