"""The alternative a Python user would deploy: FastAPI + uvicorn serving a LightGBM model with the
same SPEC request and response JSON as `exeml serve`. MODEL_PATH and FEATURES come from the
environment (set by compare.py)."""

import json
import os

import lightgbm as lgb
import pandas as pd
from fastapi import FastAPI, HTTPException, Request

booster = lgb.Booster(model_file=os.environ["MODEL_PATH"])
features = json.loads(os.environ["FEATURES"])
classes = json.loads(os.environ["CLASSES"])
app = FastAPI()


@app.get("/health")
def health():
    return {"status": "ok"}


@app.post("/v1/predict")
async def predict(request: Request):
    try:
        body = await request.json()
        rows = body["data"]["req_data"]
        frame = pd.DataFrame([[float(r[f]) for f in features] for r in rows], columns=features)
    except (KeyError, TypeError, ValueError) as e:
        raise HTTPException(status_code=400, detail=str(e))
    # One thread per prediction: each uvicorn worker is its own process already, and LightGBM's
    # default of every core per call slows single-row requests tenfold.
    positive = booster.predict(frame, num_threads=1)
    out = []
    for p in positive:
        proba = [1.0 - p, p]
        out.append({
            "predict": classes[int(p >= 0.5)],
            "probabilities": {c: f"{q:.3f}" for c, q in zip(classes, proba)},
        })
    return {"data": {"resp_data": out}}
