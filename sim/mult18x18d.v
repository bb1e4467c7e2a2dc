// Behavioural model of the ECP5 sysDSP multiplier MULT18X18D, for simulating the ECP5 form
// of fxbp's RegisteredProduct in Verilator (yosys ships only a black box for this cell).
//
// Written from Lattice's description of the block (TN1267, "ECP5 and ECP5-5G sysDSP Usage
// Guide") and its parameter names as in yosys's cells_bb_ecp5.v: operand registers for A
// and B (each holding its SIGNEDx bit with it), an optional pipeline register, an output
// register; each with a clock CLKn, an enable CEn and a synchronous or asynchronous reset
// RSTn. P is the exact 36-bit product of A and B, each extended by its SIGNEDx.
//
// It models only what fxbp instantiates: A and B registers NONE or on CLK0/CE0/RST0, no
// pipeline register, output register NONE or on CLK0/CE0/RST0, synchronous reset, inputs
// A and B (SOURCEA = SOURCEB = 0, C unused). Any other setting stops the simulation at
// time 0 rather than model it wrongly.
`default_nettype none

module MULT18X18D (
    input  wire A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15, A16, A17,
    input  wire B0, B1, B2, B3, B4, B5, B6, B7, B8, B9, B10, B11, B12, B13, B14, B15, B16, B17,
    input  wire C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14, C15, C16, C17,
    input  wire SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input  wire CLK0, CE0, RST0,
    output wire P0, P1, P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, P13, P14, P15, P16, P17,
    output wire P18, P19, P20, P21, P22, P23, P24, P25, P26, P27, P28, P29, P30, P31, P32, P33,
    output wire P34, P35
);
    parameter REG_INPUTA_CLK = "NONE";
    parameter REG_INPUTA_CE = "CE0";
    parameter REG_INPUTA_RST = "RST0";
    parameter REG_INPUTB_CLK = "NONE";
    parameter REG_INPUTB_CE = "CE0";
    parameter REG_INPUTB_RST = "RST0";
    parameter REG_INPUTC_CLK = "NONE";
    parameter REG_PIPELINE_CLK = "NONE";
    parameter REG_OUTPUT_CLK = "NONE";
    parameter REG_OUTPUT_CE = "CE0";
    parameter REG_OUTPUT_RST = "RST0";
    parameter RESETMODE = "SYNC";
    parameter GSR = "ENABLED";
    parameter SOURCEB_MODE = "B_SHIFT";
    parameter CAS_MATCH_REG = "FALSE";
    parameter MULT_BYPASS = "DISABLED";

    localparam A_REG = REG_INPUTA_CLK == "CLK0";
    localparam B_REG = REG_INPUTB_CLK == "CLK0";
    localparam P_REG = REG_OUTPUT_CLK == "CLK0";

    // The settings this model does not cover end the simulation before the first edge.
    initial begin
        if (!(REG_INPUTA_CLK == "NONE" || (A_REG && REG_INPUTA_CE == "CE0" && REG_INPUTA_RST == "RST0"))
            || !(REG_INPUTB_CLK == "NONE" || (B_REG && REG_INPUTB_CE == "CE0" && REG_INPUTB_RST == "RST0"))
            || !(REG_OUTPUT_CLK == "NONE" || (P_REG && REG_OUTPUT_CE == "CE0" && REG_OUTPUT_RST == "RST0"))
            || REG_INPUTC_CLK != "NONE" || REG_PIPELINE_CLK != "NONE" || RESETMODE != "SYNC"
            || CAS_MATCH_REG != "FALSE" || MULT_BYPASS != "DISABLED") begin
            $display("MULT18X18D model: unsupported configuration");
            $finish;
        end
    end

    always @(posedge CLK0) begin
        if (SOURCEA || SOURCEB) begin
            $display("MULT18X18D model: SOURCEA/SOURCEB (the shift chains) are not modelled");
            $finish;
        end
    end

    wire [17:0] a = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};

    reg [17:0] a_r = 18'd0, b_r = 18'd0;
    reg sa_r = 1'b0, sb_r = 1'b0;
    always @(posedge CLK0) begin
        if (RST0) begin
            a_r <= 18'd0; sa_r <= 1'b0; b_r <= 18'd0; sb_r <= 1'b0;
        end else if (CE0) begin
            a_r <= a; sa_r <= SIGNEDA; b_r <= b; sb_r <= SIGNEDB;
        end
    end

    wire [17:0] a_m = A_REG ? a_r : a;
    wire [17:0] b_m = B_REG ? b_r : b;
    wire sa_m = A_REG ? sa_r : SIGNEDA;
    wire sb_m = B_REG ? sb_r : SIGNEDB;
    wire [35:0] a_x = {{18{sa_m & a_m[17]}}, a_m};
    wire [35:0] b_x = {{18{sb_m & b_m[17]}}, b_m};
    wire [35:0] product = a_x * b_x;

    reg [35:0] p_r = 36'd0;
    always @(posedge CLK0) begin
        if (RST0) p_r <= 36'd0;
        else if (CE0) p_r <= product;
    end

    wire [35:0] p = P_REG ? p_r : product;
    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18,
            P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0} = p;

    wire _unused = &{1'b0, C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14, C15,
                     C16, C17, SOURCEA, SOURCEB};
endmodule

`default_nettype wire
