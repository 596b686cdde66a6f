-- Shared part of the libernet wrk scripts: per-thread status counters, aggregated
-- in done() into one machine-readable line that tools/bench_node.py parses.
--
-- A script loads this file with:
--   local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
--   dofile(here .. "common.lua")
-- and may add its own per-thread counters with count(name).

RESULT_MARKER = "LIBERNET-WRK-RESULT "

-- Main Lua state: the thread objects, in creation order.
local threads = {}

-- Thread Lua states: status code -> responses, and named extra counters.
statuses = {}
counters = {}
thread_number = 0

function setup(thread)
   table.insert(threads, thread)
   thread:set("thread_number", #threads)
end

function count(name, n)
   counters[name] = (counters[name] or 0) + (n or 1)
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

-- Seeds math.random differently in each thread.
function seed_random()
   math.randomseed(os.time() * 1000 + thread_number * 7919)
   for _ = 1, 10 do math.random() end
end

-- Reads a file of one token a line into a list.
function read_lines(path)
   local list = {}
   local file = assert(io.open(path, "r"))
   for line in file:lines() do
      if #line > 0 then list[#list + 1] = line end
   end
   file:close()
   return list
end

-- Minimal JSON for flat tables of numbers (keys become strings).
local function json_object(t)
   local parts = {}
   for k, v in pairs(t) do
      parts[#parts + 1] = string.format('"%s":%.17g', tostring(k), v)
   end
   return "{" .. table.concat(parts, ",") .. "}"
end

local function add_into(total, part)
   for k, v in pairs(part or {}) do
      total[k] = (total[k] or 0) + v
   end
end

function done(summary, latency, requests)
   local all_statuses, all_counters = {}, {}
   for _, thread in ipairs(threads) do
      add_into(all_statuses, thread:get("statuses"))
      add_into(all_counters, thread:get("counters"))
   end
   local lat = {
      mean = latency.mean, stdev = latency.stdev, min = latency.min, max = latency.max,
      p50 = latency:percentile(50), p90 = latency:percentile(90),
      p99 = latency:percentile(99), p999 = latency:percentile(99.9),
   }
   local e = summary.errors
   local errors = {
      connect = e.connect, read = e.read, write = e.write,
      status = e.status, timeout = e.timeout,
   }
   -- A script that removed response() (get_uncounted.lua) counted no statuses.
   local counted = type(response) == "function"
   io.write(RESULT_MARKER, "{",
      string.format('"duration_us":%d,"requests":%d,"bytes":%d,"counted":%s,',
                    summary.duration, summary.requests, summary.bytes, tostring(counted)),
      '"errors":', json_object(errors), ",",
      '"latency_us":', json_object(lat), ",",
      '"statuses":', json_object(all_statuses), ",",
      '"counters":', json_object(all_counters), "}\n")
end
