"""GPU path check without MLflow: every method trains RTE under bf16 autocast through bench's own loop;
prints steps/s, CUDA peak memory (relative to full fine-tuning) and dev accuracy.
Usage: python benchmarks/gpu_check.py MODEL_DIR DATA_DIR [steps]"""

import sys
import time

import torch

from bench.build import build_model, prepare_data
from bench.device import make_accelerator
from bench.logs import quiet_libraries
from bench.resolve import build_config
from bench.tasks import get_task
from bench.train import train

LR = {"full": 5e-5, "pasta": 1e-2, "adapter": 1e-3, "bitfit": 3e-3, "lora": 1e-3, "ptuning": 1e-2}


def main(model_dir, data_dir, steps=300):
    quiet_libraries()
    task = get_task("rte")
    print(
        f"device {torch.cuda.get_device_name(0)}; torch {torch.__version__}; MiniLM (fp16 copy, loaded "
        f"fp32); "
        f"RTE, {steps} steps, batch 32, bf16 autocast; dev = 277 RTE dev pairs; 1 seed"
    )
    rows = []
    for method in LR:
        cfg = build_config(
            {
                "method": method,
                "model": model_dir,
                "task": "rte",
                "data_dir": data_dir,
                "max_steps": steps,
                "epochs": 100,
                "lr": LR[method],
                "precision": "auto",
                "eval_batch_size": 256,
            }
        )
        built = build_model(cfg, task)
        built.model.float()
        prep = prepare_data(cfg, task, built)
        accelerator, precision = make_accelerator(cfg.precision)
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        res = train(built.model, prep, cfg, accelerator, built.stored_names, lambda *a: None, progress=False)
        torch.cuda.synchronize()
        rows.append(
            (
                method,
                precision,
                res.steps / res.train_seconds,
                torch.cuda.max_memory_allocated() / 2**20,
                res.best_metrics["dev"]["accuracy"],
                time.perf_counter() - t0,
            )
        )
        del built, accelerator
        torch.cuda.empty_cache()
    full_mem = rows[0][3]
    print(
        f"{'method':<9}{'precision':<10}{'steps/s':>9}{'peak MiB':>10}{'x full':>8}"
        f"{'dev acc':>9}{'wall s':>8}"
    )
    for m, p, sps, mem, acc, wall in rows:
        print(f"{m:<9}{p:<10}{sps:>9.1f}{mem:>10.0f}{mem / full_mem:>8.2f}{acc:>9.4f}{wall:>8.1f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
