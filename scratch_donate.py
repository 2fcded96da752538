import os, sys, time, json
os.environ["KERAS_BACKEND"] = "jax"
import jax, keras, numpy as np
import sideways_tf as sw
out = {}
for model_name, B, res in [("vgg8", 8, 112), ("vgg16", 8, 112), ("vgg8", 32, 112)]:
    keras.utils.set_random_seed(0)
    units = getattr(sw.models, model_name)(51)
    n = len(units); devs = ["gpu:0"] * (n // 2) + ["gpu:1"] * (n - n // 2) if jax.devices()[0].platform == "gpu" else ["cpu:0"] * (n // 2) + ["cpu:1"] * (n - n // 2)
    model = sw.SidewaysModel(units, mode="sideways", devices=devs)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    T = 32
    video = np.random.default_rng(0).normal(size=(B, T, res, res, 3)).astype("float32")
    labels = np.arange(B) % 51
    model.build(video.shape)
    video = jax.device_put(video, jax.devices()[0])
    values = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])
    res_row = {}
    grads = {}
    for donate in ("0", "1", "0", "1"):
        os.environ["SW_DONATE_INBOX"] = donate
        model.engine.place._functions.clear()
        f = model.gradient_function()
        g = jax.block_until_ready(f(*values, video, labels, None))
        grads[donate] = [np.asarray(x) for x in g]
        ts = []
        for _ in range(5):
            t = time.perf_counter(); jax.block_until_ready(f(*values, video, labels, None)); ts.append(time.perf_counter() - t)
        res_row[f"donate{donate}"] = round(1e3 * min(ts) / T, 3)
    err = max(float(np.max(np.abs(a - b))) for a, b in zip(grads["0"], grads["1"]))
    res_row["max_abs_diff"] = err
    out[f"{model_name}_B{B}_{res}"] = res_row
    print(model_name, B, res, res_row, flush=True)
print(json.dumps(out))
