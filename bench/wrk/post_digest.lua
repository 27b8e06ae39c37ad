-- wrk script: POST {"sha256": "<64 hex>"} with a distinct digest per request (bench/bench_service.py,
-- bench/bench_production.py). Environment: BENCH_API_KEY (sent as a Bearer key when set), BENCH_NONCE (hex,
-- makes digests differ between runs). Digest = 8 hex nonce + 8 hex thread id + 48 hex counter.

local thread_ids = 0

function setup(thread)
  thread_ids = thread_ids + 1
  thread:set("tid", thread_ids)
end

local counter = 0
local prefix

function init(args)
  local nonce = os.getenv("BENCH_NONCE") or "00000000"
  prefix = string.sub(nonce .. "00000000", 1, 8) .. string.format("%08x", tid or 0)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  local key = os.getenv("BENCH_API_KEY")
  if key ~= nil and key ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. key
  end
end

function request()
  counter = counter + 1
  local body = '{"sha256": "' .. prefix .. string.rep("0", 32) .. string.format("%016x", counter) .. '"}'
  return wrk.format(nil, nil, nil, body)
end
