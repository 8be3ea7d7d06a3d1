-- Counts answers by kind for tests/e2e/test_rate_limit_replicas.py; prints one line at the end.
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  admitted, limited, failed, last_failure = 0, 0, 0, 0
end

function response(status, headers, body)
  if status == 429 then
    limited = limited + 1
  elseif status >= 500 then
    failed = failed + 1
    last_failure = status
  else
    admitted = admitted + 1
  end
end

function done(summary, latency, requests)
  local a, l, f, status = 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    a = a + thread:get("admitted")
    l = l + thread:get("limited")
    f = f + thread:get("failed")
    status = math.max(status, thread:get("last_failure"))
  end
  io.write(string.format("COUNTS %d %d %d %d %d\n", a, l, f, summary.duration, status))
end
