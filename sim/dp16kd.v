// Behavioural model of the ECP5 block RAM DP16KD, for simulating the ECP5 form of fxbp's
// RegisteredBlockRam in Verilator (yosys ships only a black box for this cell).
//
// Written from Lattice's description of the block (TN1264, "ECP5 and ECP5-5G Memory Usage
// Guide": true dual port, 1,024 x 18 among its widths, an optional output register per
// port (REGMODE OUTREG), byte enables on address pins 1..0 at 18 bits) and its parameter
// and pin names as in yosys's cells_bb_ecp5.v.
//
// It models only what fxbp instantiates: both ports 18 bits wide (the word address on
// pins 13..4), chip selects decoded as 0b000, synchronous reset, NORMAL write mode, port A
// writing (its byte enables on ADA1..0) and port B reading, with or without its output
// register. A read of the address port A writes at the same edge is undefined on the
// block; this model returns the old word inverted, so a design that stays bit-exact in
// simulation never uses one. Port A's read data is not modelled (DOA reads 0). Any other
// setting, an initial value, or a write on port B stops the simulation rather than model
// it wrongly.
`default_nettype none

module DP16KD (
    input  wire DIA0, DIA1, DIA2, DIA3, DIA4, DIA5, DIA6, DIA7, DIA8, DIA9, DIA10, DIA11, DIA12,
    input  wire DIA13, DIA14, DIA15, DIA16, DIA17,
    input  wire ADA0, ADA1, ADA2, ADA3, ADA4, ADA5, ADA6, ADA7, ADA8, ADA9, ADA10, ADA11, ADA12,
    input  wire ADA13,
    input  wire CEA, OCEA, CLKA, WEA, RSTA, CSA0, CSA1, CSA2,
    output wire DOA0, DOA1, DOA2, DOA3, DOA4, DOA5, DOA6, DOA7, DOA8, DOA9, DOA10, DOA11, DOA12,
    output wire DOA13, DOA14, DOA15, DOA16, DOA17,
    input  wire DIB0, DIB1, DIB2, DIB3, DIB4, DIB5, DIB6, DIB7, DIB8, DIB9, DIB10, DIB11, DIB12,
    input  wire DIB13, DIB14, DIB15, DIB16, DIB17,
    input  wire ADB0, ADB1, ADB2, ADB3, ADB4, ADB5, ADB6, ADB7, ADB8, ADB9, ADB10, ADB11, ADB12,
    input  wire ADB13,
    input  wire CEB, OCEB, CLKB, WEB, RSTB, CSB0, CSB1, CSB2,
    output wire DOB0, DOB1, DOB2, DOB3, DOB4, DOB5, DOB6, DOB7, DOB8, DOB9, DOB10, DOB11, DOB12,
    output wire DOB13, DOB14, DOB15, DOB16, DOB17
);
    parameter DATA_WIDTH_A = 18;
    parameter DATA_WIDTH_B = 18;
    parameter REGMODE_A = "NOREG";
    parameter REGMODE_B = "NOREG";
    parameter RESETMODE = "SYNC";
    parameter ASYNC_RESET_RELEASE = "SYNC";
    parameter CSDECODE_A = "0b000";
    parameter CSDECODE_B = "0b000";
    parameter WRITEMODE_A = "NORMAL";
    parameter WRITEMODE_B = "NORMAL";
    parameter GSR = "ENABLED";
    parameter [319:0] INITVAL_00 = 320'h0; parameter [319:0] INITVAL_01 = 320'h0;
    parameter [319:0] INITVAL_02 = 320'h0; parameter [319:0] INITVAL_03 = 320'h0;
    parameter [319:0] INITVAL_04 = 320'h0; parameter [319:0] INITVAL_05 = 320'h0;
    parameter [319:0] INITVAL_06 = 320'h0; parameter [319:0] INITVAL_07 = 320'h0;
    parameter [319:0] INITVAL_08 = 320'h0; parameter [319:0] INITVAL_09 = 320'h0;
    parameter [319:0] INITVAL_0A = 320'h0; parameter [319:0] INITVAL_0B = 320'h0;
    parameter [319:0] INITVAL_0C = 320'h0; parameter [319:0] INITVAL_0D = 320'h0;
    parameter [319:0] INITVAL_0E = 320'h0; parameter [319:0] INITVAL_0F = 320'h0;
    parameter [319:0] INITVAL_10 = 320'h0; parameter [319:0] INITVAL_11 = 320'h0;
    parameter [319:0] INITVAL_12 = 320'h0; parameter [319:0] INITVAL_13 = 320'h0;
    parameter [319:0] INITVAL_14 = 320'h0; parameter [319:0] INITVAL_15 = 320'h0;
    parameter [319:0] INITVAL_16 = 320'h0; parameter [319:0] INITVAL_17 = 320'h0;
    parameter [319:0] INITVAL_18 = 320'h0; parameter [319:0] INITVAL_19 = 320'h0;
    parameter [319:0] INITVAL_1A = 320'h0; parameter [319:0] INITVAL_1B = 320'h0;
    parameter [319:0] INITVAL_1C = 320'h0; parameter [319:0] INITVAL_1D = 320'h0;
    parameter [319:0] INITVAL_1E = 320'h0; parameter [319:0] INITVAL_1F = 320'h0;
    parameter [319:0] INITVAL_20 = 320'h0; parameter [319:0] INITVAL_21 = 320'h0;
    parameter [319:0] INITVAL_22 = 320'h0; parameter [319:0] INITVAL_23 = 320'h0;
    parameter [319:0] INITVAL_24 = 320'h0; parameter [319:0] INITVAL_25 = 320'h0;
    parameter [319:0] INITVAL_26 = 320'h0; parameter [319:0] INITVAL_27 = 320'h0;
    parameter [319:0] INITVAL_28 = 320'h0; parameter [319:0] INITVAL_29 = 320'h0;
    parameter [319:0] INITVAL_2A = 320'h0; parameter [319:0] INITVAL_2B = 320'h0;
    parameter [319:0] INITVAL_2C = 320'h0; parameter [319:0] INITVAL_2D = 320'h0;
    parameter [319:0] INITVAL_2E = 320'h0; parameter [319:0] INITVAL_2F = 320'h0;
    parameter [319:0] INITVAL_30 = 320'h0; parameter [319:0] INITVAL_31 = 320'h0;
    parameter [319:0] INITVAL_32 = 320'h0; parameter [319:0] INITVAL_33 = 320'h0;
    parameter [319:0] INITVAL_34 = 320'h0; parameter [319:0] INITVAL_35 = 320'h0;
    parameter [319:0] INITVAL_36 = 320'h0; parameter [319:0] INITVAL_37 = 320'h0;
    parameter [319:0] INITVAL_38 = 320'h0; parameter [319:0] INITVAL_39 = 320'h0;
    parameter [319:0] INITVAL_3A = 320'h0; parameter [319:0] INITVAL_3B = 320'h0;
    parameter [319:0] INITVAL_3C = 320'h0; parameter [319:0] INITVAL_3D = 320'h0;
    parameter [319:0] INITVAL_3E = 320'h0; parameter [319:0] INITVAL_3F = 320'h0;

    // The settings this model does not cover end the simulation before the first edge.
    initial begin
        if (DATA_WIDTH_A != 18 || DATA_WIDTH_B != 18 || REGMODE_A != "NOREG"
            || !(REGMODE_B == "NOREG" || REGMODE_B == "OUTREG") || RESETMODE != "SYNC"
            || CSDECODE_A != "0b000" || CSDECODE_B != "0b000" || WRITEMODE_A != "NORMAL"
            || WRITEMODE_B != "NORMAL"
            || INITVAL_00 != 0 || INITVAL_01 != 0 || INITVAL_02 != 0 || INITVAL_03 != 0
            || INITVAL_04 != 0 || INITVAL_05 != 0 || INITVAL_06 != 0 || INITVAL_07 != 0
            || INITVAL_08 != 0 || INITVAL_09 != 0 || INITVAL_0A != 0 || INITVAL_0B != 0
            || INITVAL_0C != 0 || INITVAL_0D != 0 || INITVAL_0E != 0 || INITVAL_0F != 0
            || INITVAL_10 != 0 || INITVAL_11 != 0 || INITVAL_12 != 0 || INITVAL_13 != 0
            || INITVAL_14 != 0 || INITVAL_15 != 0 || INITVAL_16 != 0 || INITVAL_17 != 0
            || INITVAL_18 != 0 || INITVAL_19 != 0 || INITVAL_1A != 0 || INITVAL_1B != 0
            || INITVAL_1C != 0 || INITVAL_1D != 0 || INITVAL_1E != 0 || INITVAL_1F != 0
            || INITVAL_20 != 0 || INITVAL_21 != 0 || INITVAL_22 != 0 || INITVAL_23 != 0
            || INITVAL_24 != 0 || INITVAL_25 != 0 || INITVAL_26 != 0 || INITVAL_27 != 0
            || INITVAL_28 != 0 || INITVAL_29 != 0 || INITVAL_2A != 0 || INITVAL_2B != 0
            || INITVAL_2C != 0 || INITVAL_2D != 0 || INITVAL_2E != 0 || INITVAL_2F != 0
            || INITVAL_30 != 0 || INITVAL_31 != 0 || INITVAL_32 != 0 || INITVAL_33 != 0
            || INITVAL_34 != 0 || INITVAL_35 != 0 || INITVAL_36 != 0 || INITVAL_37 != 0
            || INITVAL_38 != 0 || INITVAL_39 != 0 || INITVAL_3A != 0 || INITVAL_3B != 0
            || INITVAL_3C != 0 || INITVAL_3D != 0 || INITVAL_3E != 0 || INITVAL_3F != 0) begin
            $display("DP16KD model: unsupported configuration");
            $finish;
        end
    end

    wire [13:0] ada = {ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2,
                       ADA1, ADA0};
    wire [13:0] adb = {ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2,
                       ADB1, ADB0};
    wire [17:0] dia = {DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7,
                       DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0};
    wire sel_a = {CSA2, CSA1, CSA0} == 3'b000;
    wire sel_b = {CSB2, CSB1, CSB0} == 3'b000;
    wire write_a = CEA && sel_a && WEA;

    reg [17:0] mem [0:1023];
    integer i;
    initial for (i = 0; i < 1024; i = i + 1) mem[i] = 18'd0;

    always @(posedge CLKA) begin
        if (write_a) begin
            if (ada[0]) mem[ada[13:4]][8:0] <= dia[8:0];
            if (ada[1]) mem[ada[13:4]][17:9] <= dia[17:9];
        end
    end

    reg [17:0] dob_r = 18'd0, dob_q = 18'd0;
    always @(posedge CLKB) begin
        if (CEB && sel_b && WEB) begin
            $display("DP16KD model: writes on port B are not modelled");
            $finish;
        end
        if (RSTB) dob_r <= 18'd0;
        else if (CEB && sel_b)
            dob_r <= (write_a && ada[13:4] == adb[13:4]) ? ~mem[adb[13:4]] : mem[adb[13:4]];
        if (RSTB) dob_q <= 18'd0;
        else if (OCEB) dob_q <= dob_r;
    end

    wire [17:0] dob = REGMODE_B == "OUTREG" ? dob_q : dob_r;
    assign {DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5,
            DOB4, DOB3, DOB2, DOB1, DOB0} = dob;
    assign {DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5,
            DOA4, DOA3, DOA2, DOA1, DOA0} = 18'd0;

    wire _unused = &{1'b0, OCEA, RSTA, DIB0, DIB1, DIB2, DIB3, DIB4, DIB5, DIB6, DIB7, DIB8, DIB9,
                     DIB10, DIB11, DIB12, DIB13, DIB14, DIB15, DIB16, DIB17, ada[3:2], adb[3:0]};
endmodule

`default_nettype wire
