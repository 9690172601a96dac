#!/usr/bin/python3
"""Reference values for tests/stats_test.cpp, computed by SciPy (1.10) at test time.

Reads a JSON list of requests, {"op": ..., arguments}, from the file named by the first
argument, the argument itself when it starts with "[", or stdin; prints the JSON list of
results in the same order. NaN travels as null both ways. Exits 3 when NumPy or SciPy cannot
be imported (harness/scripts/setup.sh installs python3-scipy).

Ops: paired_t (scipy.stats.ttest_rel), wilcoxon (scipy.stats.wilcoxon, zero_method "wilcox",
no correction, the given method), holm (statsmodels multipletests(method="holm") arithmetic,
written out here), tost (two one-sided scipy.stats.ttest_1samp), mde and mde_two_sample
(scipy.stats.nct power solved by scipy.optimize.brentq), welch (scipy.stats.ttest_ind with
equal_var=False, the interval by hand).

Student-t quantiles: SciPy 1.10's t.ppf (cdflib's stdtrit) is off by up to a few 1e-9
relative (df 4, q 0.95: 2.13184678133629 for 2.1318467863266495), so every interval here takes
t.ppf polished by Newton steps on t.cdf (cephes, accurate to rounding); SciPy's own intervals
come back too, as scipy_ci_low/scipy_ci_high, for a check at that looser accuracy.
"""
import json
import math
import sys
import warnings


def nan_from_null(values):
    return [math.nan if v is None else float(v) for v in values]


def null_from_nan(value):
    if isinstance(value, list):
        return [null_from_nan(v) for v in value]
    if isinstance(value, dict):
        return {k: null_from_nan(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def main():
    try:
        import numpy as np
        from scipy import optimize, stats
    except ImportError as error:
        print(f"stats_reference.py: {error}; run harness/scripts/setup.sh (python3-scipy)",
              file=sys.stderr)
        return 3
    warnings.simplefilter("ignore")  # SciPy's small-sample warnings would corrupt the JSON

    def t_ppf(q, df):
        x = stats.t.ppf(q, df)
        for _ in range(2):
            x -= (stats.t.cdf(x, df) - q) / stats.t.pdf(x, df)
        return float(x)

    def t_interval(d, confidence):
        se = np.std(d, ddof=1) / math.sqrt(len(d))
        half = t_ppf((1 + confidence) / 2, len(d) - 1) * se
        return float(np.mean(d) - half), float(np.mean(d) + half)

    def paired_t(r):
        treatment, baseline = np.array(r["treatment"]), np.array(r["baseline"])
        result = stats.ttest_rel(treatment, baseline)
        interval = result.confidence_interval(r["confidence"])
        d = treatment - baseline
        low, high = t_interval(d, r["confidence"])
        return {"t": float(result.statistic), "df": float(result.df), "p": float(result.pvalue),
                "mean_diff": float(np.mean(d)), "sd": float(np.std(d, ddof=1)),
                "ci_low": low, "ci_high": high, "scipy_ci_low": float(interval.low),
                "scipy_ci_high": float(interval.high)}

    def wilcoxon(r):
        return float(stats.wilcoxon(r["d"], method=r["method"]).pvalue)

    def holm(r):
        p = np.array(nan_from_null(r["p"]))
        adjusted = np.full(len(p), math.nan)
        valid = np.flatnonzero(~np.isnan(p))
        order = valid[np.argsort(p[valid], kind="mergesort")]
        m = len(order)
        raw = p[order] * (m - np.arange(m))  # (m - j) p_(j), j from 0
        adjusted[order] = np.minimum(1.0, np.maximum.accumulate(raw))
        return adjusted.tolist()

    def tost(r):
        d, margin, alpha = np.array(r["d"]), r["margin"], r["alpha"]
        p_lower = stats.ttest_1samp(d, -margin, alternative="greater").pvalue
        p_upper = stats.ttest_1samp(d, margin, alternative="less").pvalue
        interval = stats.ttest_1samp(d, 0.0).confidence_interval(1 - 2 * alpha)
        low, high = t_interval(d, 1 - 2 * alpha)
        return {"p_lower": float(p_lower), "p_upper": float(p_upper),
                "p": float(max(p_lower, p_upper)), "ci_low": low, "ci_high": high,
                "scipy_ci_low": float(interval.low), "scipy_ci_high": float(interval.high)}

    def noncentrality(df, alpha, power):
        critical = t_ppf(1 - alpha / 2, df)

        def shortfall(lam):
            return stats.nct.sf(critical, df, lam) + stats.nct.cdf(-critical, df, lam) - power

        high = 1.0
        while shortfall(high) < 0:
            high *= 2
        return optimize.brentq(shortfall, 0.0, high, xtol=1e-15, rtol=1e-15, maxiter=500)

    def mde(r):
        n = r["n"]
        return noncentrality(n - 1, r["alpha"], r["power"]) * r["sd"] / math.sqrt(n)

    def mde_two_sample(r):
        va, vb = r["sd_a"] ** 2 / r["n_a"], r["sd_b"] ** 2 / r["n_b"]
        df = (va + vb) ** 2 / (va ** 2 / (r["n_a"] - 1) + vb ** 2 / (r["n_b"] - 1))
        return noncentrality(df, r["alpha"], r["power"]) * math.sqrt(va + vb)

    def welch(r):
        a, b = np.array(r["a"]), np.array(r["b"])
        result = stats.ttest_ind(a, b, equal_var=False)
        va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
        df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
        diff = np.mean(a) - np.mean(b)
        half = t_ppf((1 + r["confidence"]) / 2, df) * math.sqrt(va + vb)
        return {"t": float(result.statistic), "p": float(result.pvalue), "df": float(df),
                "mean_diff": float(diff), "ci_low": float(diff - half),
                "ci_high": float(diff + half)}

    ops = {"paired_t": paired_t, "wilcoxon": wilcoxon, "holm": holm, "tost": tost, "mde": mde,
           "mde_two_sample": mde_two_sample, "welch": welch}
    if len(sys.argv) > 1 and sys.argv[1].startswith("["):
        requests = json.loads(sys.argv[1])
    elif len(sys.argv) > 1:
        with open(sys.argv[1]) as source:
            requests = json.load(source)
    else:
        requests = json.load(sys.stdin)
    print(json.dumps([null_from_nan(ops[r["op"]](r)) for r in requests]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
