"""Your own PyG training script on gnnkit's layers: swap the import, add one step.

A PyG-style script (a model class, a `train()` and a `test()` per epoch, as PyG's
`examples/gcn.py` and `examples/gat.py`) runs unchanged on gnnkit's drop-in layers. Two edits
make it fast on bag-of-words features such as Cora's (2708 x 1433, 1.3 % non-zero):

1. `from gnnkit.nn import GCNConv, GATConv, dropout` in place of PyG's layers and `F.dropout`;
2. the one step: `gnnkit.SparseFeatures()` after `T.NormalizeFeatures()`, which stores the
   features as a sparse CSR matrix. The layers multiply it without densifying it and `dropout`
   keeps it sparse; with dense features most of an epoch goes to dropout and `x @ W` on the
   2708 x 1433 matrix (benchmarks/results/user_script_rerun5.md, the latest measurement).

Expect about 81 % (GCN) or 82 % (GAT) test accuracy on Cora, a few milliseconds per GCN epoch.

Run (from a source checkout, after `make install`, which `make demo` runs too, with `.venv` active):

    GNNKIT_MIRROR=/path/to/datasets python examples/own_script.py [--model gat] [--seed 0]
"""

import argparse
import time

import torch
import torch.nn.functional as F
import torch_geometric.transforms as T

from gnnkit import SparseFeatures, load_dataset
from gnnkit.nn import GATConv, GCNConv, dropout  # was: torch_geometric.nn, F.dropout

parser = argparse.ArgumentParser(description="A PyG-style GCN / GAT script on gnnkit's layers.")
parser.add_argument("--dataset", default="cora", help="cora, citeseer, pubmed or karate")
parser.add_argument("--model", default="gcn", choices=["gcn", "gat"])
parser.add_argument("--epochs", type=int, default=200)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
torch.manual_seed(args.seed)

# The one step: row-normalise as PyG's example does, then keep the features sparse (CSR).
transform = T.Compose([T.NormalizeFeatures(), SparseFeatures()])
data = transform(load_dataset(args.dataset))
print(f"{args.dataset}: x is {tuple(data.x.shape)}, {data.x.layout}")


class GCN(torch.nn.Module):
    def __init__(self, in_channels, hidden_channels, out_channels):
        super().__init__()
        self.conv1 = GCNConv(in_channels, hidden_channels)
        self.conv2 = GCNConv(hidden_channels, out_channels)

    def forward(self, x, edge_index):
        x = dropout(x, p=0.5, training=self.training)  # sparse x stays sparse
        x = self.conv1(x, edge_index).relu()
        x = dropout(x, p=0.5, training=self.training)
        return self.conv2(x, edge_index)


class GAT(torch.nn.Module):
    def __init__(self, in_channels, hidden_channels, out_channels, heads=8):
        super().__init__()
        self.conv1 = GATConv(in_channels, hidden_channels, heads, dropout=0.6)
        self.conv2 = GATConv(hidden_channels * heads, out_channels, heads=1, dropout=0.6)

    def forward(self, x, edge_index):
        x = dropout(x, p=0.6, training=self.training)
        x = F.elu(self.conv1(x, edge_index))
        x = dropout(x, p=0.6, training=self.training)
        return self.conv2(x, edge_index)


if args.model == "gcn":
    model = GCN(data.num_features, 16, data.num_classes)
    optimizer = torch.optim.Adam(
        [
            dict(params=model.conv1.parameters(), weight_decay=5e-4),
            dict(params=model.conv2.parameters(), weight_decay=0),
        ],
        lr=0.01,
    )
else:
    model = GAT(data.num_features, 8, data.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.005, weight_decay=5e-4)


def train():
    model.train()
    optimizer.zero_grad()
    out = model(data.x, data.edge_index)
    loss = F.cross_entropy(out[data.train_mask], data.y[data.train_mask])
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def test():
    model.eval()
    pred = model(data.x, data.edge_index).argmax(dim=-1)
    masks = [data.train_mask, data.val_mask, data.test_mask]
    return [int((pred[mask] == data.y[mask]).sum()) / int(mask.sum()) for mask in masks]


best_val_acc = test_acc = 0.0
times = []
for epoch in range(1, args.epochs + 1):
    start = time.perf_counter()
    loss = train()
    train_acc, val_acc, tmp_test_acc = test()
    times.append(time.perf_counter() - start)
    if val_acc > best_val_acc:
        best_val_acc, test_acc = val_acc, tmp_test_acc
    if epoch % 50 == 0 or epoch == args.epochs:
        print(f"epoch {epoch:03d}  loss {loss:.4f}  val {val_acc:.4f}  test {tmp_test_acc:.4f}")
print(f"test accuracy at the best validation epoch: {100 * test_acc:.1f} %")
print(f"median epoch: {1000 * sorted(times)[len(times) // 2]:.2f} ms")
