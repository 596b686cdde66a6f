-- PUT fresh blocks: wrk -s put.lua URL -- POOL_DIR BLOCK_SIZE THREADS
-- Thread n loads its own share, POOL_DIR/t<n>.ids (one id a line) and POOL_DIR/t<n>.bin
-- (the blocks, concatenated in the same order, BLOCK_SIZE bytes each), and sends them in
-- order, so every PUT is a block the node has never seen (answer 201).
--
-- wrk calls delay() before every request and then request() exactly once, after the
-- delay. A thread whose share is used up parks each connection for an hour (longer
-- than any run) instead of sending a block again; parked connections are counted
-- ("parked"), so the report shows when fewer connections were active at the end.
-- Should a block still be sent twice, it is counted ("repeats") and answered 200.
--
-- Loading a share takes seconds, and wrk starts each thread as soon as its own init is
-- done, before the next thread's init and before its clock starts. So each thread
-- marks itself ready (POOL_DIR/ready.<n>), and its first delay() call sleeps until
-- every thread is ready (at most BARRIER_SECONDS): nothing is sent before the
-- measured window starts.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

local ffi = require("ffi")
ffi.cdef("int usleep(unsigned int usec);")

local requests = {}
local next_index = 1
-- Blocks promised to connections by delay(); each is then sent by one request().
local claimed = 0
local PARK_MS = 3600 * 1000
local BARRIER_SECONDS = 120
local pool_dir, thread_count
local everyone_ready = false

function init(args)
   local size
   pool_dir, size, thread_count = args[1], tonumber(args[2]), tonumber(args[3])
   assert(pool_dir and size and thread_count, "usage: put.lua -- POOL_DIR BLOCK_SIZE THREADS")
   local ids = read_lines(string.format("%s/t%d.ids", pool_dir, thread_number))
   local file = assert(io.open(string.format("%s/t%d.bin", pool_dir, thread_number), "rb"))
   for i, id in ipairs(ids) do
      local body = file:read(size)
      assert(body and #body == size, "pool file shorter than its id list")
      requests[i] = wrk.format("PUT", "/sha256/" .. id,
         { ["Content-Type"] = "application/octet-stream" }, body)
   end
   file:close()
   assert(#requests > 0, "empty pool share for thread " .. thread_number)
   count("pool", #requests)
   local marker = assert(io.open(string.format("%s/ready.%d", pool_dir, thread_number), "w"))
   marker:close()
end

local function all_threads_ready()
   for n = 1, thread_count do
      local marker = io.open(string.format("%s/ready.%d", pool_dir, n), "r")
      if not marker then return false end
      marker:close()
   end
   return true
end

-- Blocks this thread (before its first request) until all threads are ready.
local function wait_for_all_threads()
   local waited = 0
   while not all_threads_ready() do
      assert(waited < BARRIER_SECONDS, "other wrk threads never became ready")
      ffi.C.usleep(10000)
      waited = waited + 0.01
   end
end

function delay()
   if not everyone_ready then
      wait_for_all_threads()
      everyone_ready = true
   end
   if claimed >= #requests then
      count("parked")
      return PARK_MS
   end
   claimed = claimed + 1
   return 0
end

function request()
   if next_index > #requests then
      next_index = 1
   end
   if counters.sent and counters.sent >= #requests then
      count("repeats")
   end
   count("sent")
   local req = requests[next_index]
   next_index = next_index + 1
   return req
end
