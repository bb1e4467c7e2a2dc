"""cocotb testbenches and native Verilator harnesses for fxbp's RTL."""
