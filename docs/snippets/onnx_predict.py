# usage: python onnx_predict.py model.onnx photo.jpg  (a model exported by `transfer.inference.export`)
import json
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
meta = session.get_modelmeta().custom_metadata_map  # classes and preprocessing travel in the file
classes, (c, h, w) = json.loads(meta["classes"]), json.loads(meta["input_size"])
side = int(np.ceil(max(h, w) / float(meta["crop_pct"])))  # shorter side -> side, centre square, centre h x w
img = Image.open(sys.argv[2]).convert("L" if c == 1 else "RGB")
scale, resample = side / min(img.size), getattr(Image.Resampling, meta["interpolation"].upper())
img = img.resize(
    (max(side, round(img.width * scale)), max(side, round(img.height * scale))), resample, reducing_gap=3.0
)
left, top = (img.width - side) // 2 + round((side - w) / 2), (img.height - side) // 2 + round((side - h) / 2)
x = np.asarray(img.crop((left, top, left + w, top + h)), np.float32).reshape(h, w, c) / 255
x = ((x - json.loads(meta["mean"])) / json.loads(meta["std"])).transpose(2, 0, 1)[None].astype(np.float32)
p = session.run(["probabilities"], {"image": x})[0][0]
print(classes[int(p.argmax())], float(p.max()))
