-- Shared by every scenario: inputs from files named in environment variables (the suite's
-- set-up step writes them), random picks, and one machine-readable summary line at the end.
local M = {}

function M.lines(variable)
  local path = os.getenv(variable)
  if path == nil then error(variable .. " is not set") end
  local items = {}
  for line in io.lines(path) do
    if line ~= "" then items[#items + 1] = line end
  end
  if #items == 0 then error(path .. " is empty") end
  return items
end

function M.number(variable, default)
  local value = os.getenv(variable)
  if value == nil or value == "" then return default end
  return tonumber(value)
end

function M.pick(items)
  return items[math.random(1, #items)]
end

local hex = "0123456789abcdef"
function M.random_hex(length)
  local out = {}
  for i = 1, length do
    local n = math.random(1, 16)
    out[i] = hex:sub(n, n)
  end
  return table.concat(out)
end

function M.seed()
  -- One seed per thread and per run, from the kernel. The time and CPU clock it was before
  -- repeated across runs started seconds apart: an order run then sent the previous run's
  -- Idempotency-Keys for the same buyers, and got their stored answers back.
  local urandom = assert(io.open("/dev/urandom", "rb"))
  local a, b, c, d = urandom:read(4):byte(1, 4)
  urandom:close()
  math.randomseed(((a * 256 + b) * 256 + c) * 256 + d)
end

function M.done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,'
      .. '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, errors.connect, errors.read,
    errors.write, errors.status, errors.timeout, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end

return M
