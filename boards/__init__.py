"""FPGA board targets (yosys + nextpnr, iCE40 and ECP5) for fxbp."""
