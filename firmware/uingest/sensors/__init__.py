# Sensor drivers, one module each, imported on their own so a board pays RAM
# only for the one it uses: imu (MPU6050, MPU6886), adc, i2s_mic (INMP441),
# synthetic, csv_replay; hardware.Hardware is what a board's setup() returns,
# sim.setup() builds the simulated boards' hardware.
#
# Every driver has `sensors` ((name, units) pairs) and `typecode` ('f' or 'h')
# to build its Window from, and either read(window), one row per call with
# the sampler keeping the rate, or fill(window), for a device that streams at
# its own clock (I2S) and fills the whole window.
#
# No code here: importing a driver imports this package first.
