class DepthwiseSeparable(nn.Module):
    def __init__(self, c_in, c_out, k=3):
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, kernel_size=(k, k), padding=(k - 1) // 2, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, kernel_size=(1, 1), bias=False)

    def forward(self, x):
        return self.pointwise(F.relu(self.depthwise(x)))
