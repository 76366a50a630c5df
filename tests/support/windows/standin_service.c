/* A stand-in for the Sonde agent's Windows service, for the MSI tests under Wine.
 *
 * It does what the SCM and the MSI expect of the real one (pythonservice.exe hosting
 * sonde.agent.windows_service): registers as SondeAgent, reports running, takes the
 * enrollment string from HKLM\SOFTWARE\Sonde\Agent (value Enrollment) and deletes it, and
 * stops on request. What it saw goes to C:\ProgramData\Sonde\agent\standin-service.txt:
 * "running <version>", "enrollment <length>" and "stopped", one line each.
 * Built with: x86_64-w64-mingw32-gcc -O2 -o sonde-service.exe standin_service.c -ladvapi32 -lshell32
 */
#include <windows.h>
#include <shlobj.h>
#include <stdio.h>
#include <string.h>

#ifndef STANDIN_VERSION
#define STANDIN_VERSION "0"
#endif

static SERVICE_STATUS_HANDLE status_handle;
static SERVICE_STATUS status;
static HANDLE stop_event;

static void note(const char *line)
{
    char path[MAX_PATH + 64];
    /* The folder the MSI's CommonAppDataFolder is (Wine's services see another %ProgramData%). */
    if (SHGetFolderPathA(NULL, CSIDL_COMMON_APPDATA, NULL, 0, path) != S_OK) return;
    strcat(path, "\\Sonde\\agent\\standin-service.txt");
    FILE *f = fopen(path, "a");
    if (f) { fprintf(f, "%s\n", line); fclose(f); }
}

static void report(DWORD state)
{
    status.dwCurrentState = state;
    status.dwControlsAccepted = state == SERVICE_RUNNING ? SERVICE_ACCEPT_STOP : 0;
    SetServiceStatus(status_handle, &status);
}

static DWORD WINAPI control(DWORD code, DWORD type, LPVOID data, LPVOID context)
{
    (void)type; (void)data; (void)context;
    if (code == SERVICE_CONTROL_STOP || code == SERVICE_CONTROL_SHUTDOWN) {
        report(SERVICE_STOP_PENDING);
        SetEvent(stop_event);
    }
    return NO_ERROR;
}

static void take_enrollment(void)
{
    HKEY key;
    char value[4096];
    DWORD size = sizeof value - 1, type = 0;
    char line[64];
    if (RegOpenKeyExA(HKEY_LOCAL_MACHINE, "SOFTWARE\\Sonde\\Agent", 0,
                      KEY_QUERY_VALUE | KEY_SET_VALUE | KEY_WOW64_64KEY, &key) != ERROR_SUCCESS) {
        note("enrollment none");
        return;
    }
    if (RegQueryValueExA(key, "Enrollment", NULL, &type, (BYTE *)value, &size) == ERROR_SUCCESS
        && type == REG_SZ) {
        value[size] = 0;
        snprintf(line, sizeof line, "enrollment %u", (unsigned)strlen(value));
        note(line);
        RegDeleteValueA(key, "Enrollment");
    } else {
        note("enrollment none");
    }
    RegCloseKey(key);
}

static void WINAPI service_main(DWORD argc, LPSTR *argv)
{
    (void)argc; (void)argv;
    status.dwServiceType = SERVICE_WIN32_OWN_PROCESS;
    status_handle = RegisterServiceCtrlHandlerExA("SondeAgent", control, NULL);
    if (!status_handle) return;
    stop_event = CreateEventA(NULL, TRUE, FALSE, NULL);
    report(SERVICE_START_PENDING);
    take_enrollment();
    note("running " STANDIN_VERSION);
    report(SERVICE_RUNNING);
    WaitForSingleObject(stop_event, INFINITE);
    note("stopped");
    report(SERVICE_STOPPED);
}

int main(void)
{
    SERVICE_TABLE_ENTRYA table[] = {{"SondeAgent", service_main}, {NULL, NULL}};
    return StartServiceCtrlDispatcherA(table) ? 0 : 1;
}
