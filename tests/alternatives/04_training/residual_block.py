class ResidualBlock(nn.Module):
    def __init__(self, body):
        super().__init__()
        self.add_module("body", body)

    def forward(self, x):
        return torch.add(self.body(x), x)
