"""The paper's published numbers (Kim et al., ICIP 2020), as references to print beside
ours. Accuracies in percent; epsilons in 0-255 pixel units. Never a target to tune to."""

from __future__ import annotations

# Table 1: white-box accuracy. (dataset, attack, eps) -> {variant: accuracy}
# eps is None for the minimum-norm attacks (CW with confidence 0, DeepFool).
TABLE1: dict[tuple[str, str, int | None], dict[str, float]] = {
    ("mnist", "clean", 0): {"C": 98.23, "AE-C": 98.33},
    ("mnist", "fgsm", 20): {"C": 69.94, "AE-C": 88.98},
    ("mnist", "fgsm", 80): {"C": 2.16, "AE-C": 50.24},
    ("mnist", "pgd", 20): {"C": 30.63, "AE-C": 71.24},
    ("mnist", "pgd", 80): {"C": 0.00, "AE-C": 2.45},
    ("mnist", "cw", None): {"C": 8.50, "AE-C": 9.40},
    ("mnist", "deepfool", None): {"C": 0.88, "AE-C": 37.67},
    ("cifar10", "clean", 0): {"C": 89.67, "AE-C": 88.32},
    ("cifar10", "fgsm", 5): {"C": 24.51, "AE-C": 30.47},
    ("cifar10", "fgsm", 10): {"C": 15.24, "AE-C": 21.02},
    ("cifar10", "pgd", 5): {"C": 2.58, "AE-C": 5.14},
    ("cifar10", "pgd", 10): {"C": 0.19, "AE-C": 0.55},
    ("cifar10", "cw", None): {"C": 9.70, "AE-C": 10.80},
    ("cifar10", "deepfool", None): {"C": 8.20, "AE-C": 9.40},
}

# Table 2: black-box transfer accuracy. (substitute, dataset, attack, eps) -> {variant: acc}
# substitute "different": another architecture (a); "same": same architecture, retrained (b).
TABLE2: dict[tuple[str, str, str, int], dict[str, float]] = {
    ("different", "mnist", "fgsm", 20): {"C": 96.53, "AE-C": 97.07},
    ("different", "mnist", "fgsm", 80): {"C": 69.96, "AE-C": 72.95},
    ("different", "mnist", "pgd", 20): {"C": 96.52, "AE-C": 97.19},
    ("different", "mnist", "pgd", 80): {"C": 65.64, "AE-C": 81.39},
    ("different", "cifar10", "fgsm", 5): {"C": 62.07, "AE-C": 69.49},
    ("different", "cifar10", "fgsm", 10): {"C": 47.47, "AE-C": 57.03},
    ("different", "cifar10", "pgd", 5): {"C": 62.07, "AE-C": 69.49},
    ("different", "cifar10", "pgd", 10): {"C": 28.56, "AE-C": 49.45},
    ("same", "mnist", "fgsm", 20): {"C": 92.46, "AE-C": 96.24},
    ("same", "mnist", "fgsm", 80): {"C": 32.03, "AE-C": 73.94},
    ("same", "mnist", "pgd", 20): {"C": 88.20, "AE-C": 95.60},
    ("same", "mnist", "pgd", 80): {"C": 1.11, "AE-C": 71.90},
    ("same", "cifar10", "fgsm", 5): {"C": 49.62, "AE-C": 61.63},
    ("same", "cifar10", "fgsm", 10): {"C": 28.34, "AE-C": 44.36},
    ("same", "cifar10", "pgd", 5): {"C": 42.80, "AE-C": 66.33},
    ("same", "cifar10", "pgd", 10): {"C": 18.28, "AE-C": 44.91},
}

# Table 3 (MNIST): latent classifier. (method, attack, eps) -> {setting: accuracy}
TABLE3: dict[tuple[str, str, int], dict[str, float]] = {
    ("regularization", "fgsm", 20): {"lambda=0": 63.73, "lambda=1": 69.07, "lambda=4": 72.48},
    ("regularization", "fgsm", 50): {"lambda=0": 9.3, "lambda=1": 11.96, "lambda=4": 13.52},
    ("regularization", "pgd", 20): {"lambda=0": 28.78, "lambda=1": 36.53, "lambda=4": 39.86},
    ("regularization", "pgd", 50): {"lambda=0": 0.02, "lambda=1": 0.20, "lambda=4": 0.51},
    ("alternating", "fgsm", 20): {"gamma=0": 63.73, "gamma=1": 69.02, "gamma=2": 70.26},
    ("alternating", "fgsm", 50): {"gamma=0": 9.3, "gamma=1": 13.60, "gamma=2": 14.67},
    ("alternating", "pgd", 20): {"gamma=0": 28.78, "gamma=1": 40.40, "gamma=2": 49.51},
    ("alternating", "pgd", 50): {"gamma=0": 0.02, "gamma=1": 0.37, "gamma=2": 4.89},
}

# Table 4: mean L1 norm of the input gradient of the softmax output.
TABLE4: dict[str, dict[str, float]] = {
    "cifar10": {"C": 5.9e-3, "AE-C": 6.9e-3},
    "mnist": {"C": 8.9e-4, "AE-C": 4.3e-3},
}
