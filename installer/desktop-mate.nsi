; Desktop-Mate tray: the Windows installer (NSIS 3, Modern UI 2, in French).
;
; Built by installer/build.sh, which passes:
;   -DVERSION=0.1.0  -DVI_VERSION=0.1.0.0  -DSTAGE_DIR=<folder made by stage_windows_app.py>
;   -DICON=<.ico>    -DOUT_FILE=<setup .exe>
; and optionally -DCOMPRESSOR=zlib (default lzma) and -DNSIS_TARGET=x86-unicode (default amd64-unicode).
;
; Per user, no administrator rights: everything goes under the user's profile and HKCU.
;   program   %LOCALAPPDATA%\Programs\DesktopMate   (python\, app\, DesktopMate.ico, uninstall.exe)
;   settings  %APPDATA%\DesktopMate\DesktopMateTray        (platformdirs user_config_dir, roaming)
;   logs/data %LOCALAPPDATA%\DesktopMate\DesktopMateTray   (platformdirs user_data_dir / user_log_dir)
;
; Command line (silent mode is for administrators and for installer/check_under_wine.sh):
;   setup.exe /S                    silent install, with the default components
;   setup.exe /S /NODESKTOP         ... without the desktop shortcut
;   setup.exe /S /NOAUTOSTART       ... without starting with Windows
;   setup.exe /D=C:\autre\dossier   another folder (must be last, NSIS rule)
;   uninstall.exe /S                silent uninstall: KEEPS the user's settings, models list and logs
;   uninstall.exe /S /PURGE         silent uninstall that also deletes them

Unicode true
; A 64-bit installer: the Python and llama.cpp it carries are 64-bit only. Debian's nsis package has
; the amd64 stubs; the official Windows build of NSIS (choco, GitHub Actions) has only x86 ones, so the
; workflow passes -DNSIS_TARGET=x86-unicode (.onInit then refuses 32-bit Windows all the same).
!ifndef NSIS_TARGET
  !define NSIS_TARGET amd64-unicode
!endif
Target ${NSIS_TARGET}
; LZMA (solid) makes the smallest installer but takes minutes on a small machine; build.sh passes
; -DCOMPRESSOR=zlib when DM_NSIS_COMPRESSOR=zlib (quick CI builds: ~15 % bigger, ~10x faster).
!ifndef COMPRESSOR
  !define COMPRESSOR lzma
!endif
SetCompressor /SOLID ${COMPRESSOR}
!if ${COMPRESSOR} == lzma
  SetCompressorDictSize 64
!endif
RequestExecutionLevel user
ManifestDPIAware true

!ifndef VERSION | VI_VERSION | STAGE_DIR | ICON | OUT_FILE
  !error "build with installer/build.sh (VERSION, VI_VERSION, STAGE_DIR, ICON and OUT_FILE are needed)"
!endif

!define PRODUCT "Desktop-Mate"
!define PUBLISHER "DesktopMate"
; platformdirs' names (tray_app.APP_NAME / APP_AUTHOR): the user's folders are <root>\DesktopMate\DesktopMateTray
!define APP_AUTHOR "DesktopMate"
!define APP_NAME "DesktopMateTray"
!define UNINSTALL_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\DesktopMateTray"
!define RUN_KEY "Software\Microsoft\Windows\CurrentVersion\Run"
!define RUN_VALUE "DesktopMateTray"

Name "${PRODUCT}"
OutFile "${OUT_FILE}"
InstallDir "$LOCALAPPDATA\Programs\DesktopMate"
InstallDirRegKey HKCU "${UNINSTALL_KEY}" "InstallLocation"
BrandingText "${PRODUCT} ${VERSION}"
ShowInstDetails hide
ShowUninstDetails hide

!include "MUI2.nsh"
!include "LogicLib.nsh"
!include "FileFunc.nsh"
!include "Sections.nsh"
!include "nsDialogs.nsh"
!include "WinVer.nsh"
!include "x64.nsh"

; ---- version information (Properties > Details of the setup .exe) -----------------------------------
VIProductVersion "${VI_VERSION}"
VIFileVersion "${VI_VERSION}"
VIAddVersionKey /LANG=1036 "ProductName" "${PRODUCT}"
VIAddVersionKey /LANG=1036 "ProductVersion" "${VERSION}"
VIAddVersionKey /LANG=1036 "FileVersion" "${VERSION}"
VIAddVersionKey /LANG=1036 "FileDescription" "Installation de ${PRODUCT} ${VERSION}"
VIAddVersionKey /LANG=1036 "CompanyName" "${PUBLISHER}"
VIAddVersionKey /LANG=1036 "LegalCopyright" "Licence MIT"
VIAddVersionKey /LANG=1036 "Comments" "Héberge le modèle de langue de votre avatar, sur votre ordinateur."

; ---- pages ---------------------------------------------------------------------------------------------
!define MUI_ICON "${ICON}"
!define MUI_UNICON "${ICON}"
!define MUI_ABORTWARNING
!define MUI_COMPONENTSPAGE_SMALLDESC
!define MUI_WELCOMEPAGE_TITLE "Bienvenue dans l'installation de ${PRODUCT}"
!define MUI_WELCOMEPAGE_TEXT "${PRODUCT} est la petite icône près de l'horloge qui fait tourner le « cerveau » \
de votre avatar (son modèle de langue), directement sur votre ordinateur, sans Internet.$\r$\n$\r$\n\
Aucun droit d'administrateur n'est nécessaire : le programme s'installe pour vous seul.$\r$\n$\r$\n\
Cliquez sur Suivant pour continuer."
!define MUI_FINISHPAGE_RUN
!define MUI_FINISHPAGE_RUN_TEXT "Lancer ${PRODUCT} maintenant"
!define MUI_FINISHPAGE_RUN_FUNCTION LaunchApp
!define MUI_FINISHPAGE_TEXT "${PRODUCT} est installé. Son icône apparaît près de l'horloge \
(cliquez sur la petite flèche ^ si vous ne la voyez pas).$\r$\n$\r$\n\
Pour le relancer plus tard : menu Démarrer > ${PRODUCT}."

!insertmacro MUI_PAGE_WELCOME
!insertmacro MUI_PAGE_COMPONENTS
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH

!insertmacro MUI_UNPAGE_CONFIRM
UninstPage custom un.KeepDataPage un.KeepDataLeave
!insertmacro MUI_UNPAGE_INSTFILES

!insertmacro MUI_LANGUAGE "French"

; ---- helpers --------------------------------------------------------------------------------------------

; Closes the copies of the program that run from this folder (the tray and its model runner), so that
; their files can be replaced or removed. The folder is handed to PowerShell through an environment
; variable, never spliced into the command line: a user name with an apostrophe stays harmless.
; Where PowerShell is missing (wine), nothing happens and a locked file is reported by NSIS as usual.
!macro CLOSE_RUNNING_COPIES
  System::Call 'kernel32::SetEnvironmentVariable(t "DESKTOP_MATE_INSTDIR", t "$INSTDIR\python\")'
  nsExec::Exec `powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -Command "Get-Process -Name python,pythonw -ErrorAction SilentlyContinue | Where-Object { $$_.Path -and $$_.Path.StartsWith($$env:DESKTOP_MATE_INSTDIR, [StringComparison]::OrdinalIgnoreCase) } | Stop-Process -Force"`
  Pop $0
!macroend

Function LaunchApp
  SetOutPath "$INSTDIR\app"
  Exec '"$INSTDIR\python\pythonw.exe" -m tray_app'
FunctionEnd

; ---- installation ---------------------------------------------------------------------------------------

Section "${PRODUCT} (obligatoire)" SecMain
  SectionIn RO
  !insertmacro CLOSE_RUNNING_COPIES
  ; An update replaces the program folders whole: no file of the previous version stays behind.
  ; Only our own sub-folders are removed, never $INSTDIR itself (the user may have chosen a shared folder).
  RMDir /r "$INSTDIR\python"
  RMDir /r "$INSTDIR\app"

  SetOutPath "$INSTDIR"
  File /r "${STAGE_DIR}\*.*"
  WriteUninstaller "$INSTDIR\uninstall.exe"
  ; Compile the Python files now, as pip does when it installs a package: otherwise the first start of
  ; the tray and the first opening of the gauges (pyqtgraph) compile them while the user waits.
  ; A file that does not compile is only slower to load: the result is not checked.
  DetailPrint "Préparation des fichiers du programme…"
  nsExec::Exec '"$INSTDIR\python\python.exe" -m compileall -q "$INSTDIR\app" "$INSTDIR\python\Lib\site-packages"'
  Pop $0

  ; Start menu (this user's): the program, and a check that opens a window with the result.
  SetOutPath "$INSTDIR\app"   ; the shortcuts' working folder
  CreateShortcut "$SMPROGRAMS\${PRODUCT}.lnk" "$INSTDIR\python\pythonw.exe" "-m tray_app" \
    "$INSTDIR\DesktopMate.ico" 0 SW_SHOWNORMAL "" "Héberge le modèle de langue de votre avatar"
  CreateDirectory "$SMPROGRAMS\${PRODUCT} - outils"
  CreateShortcut "$SMPROGRAMS\${PRODUCT} - outils\Vérifier le fonctionnement.lnk" "$WINDIR\System32\cmd.exe" \
    '/k ""$INSTDIR\desktop-mate-tray.cmd" self-test"' "$INSTDIR\DesktopMate.ico" 0 SW_SHOWNORMAL "" \
    "Charge le modèle de démonstration, lui pose une question et affiche le résultat"
  CreateShortcut "$SMPROGRAMS\${PRODUCT} - outils\Désinstaller ${PRODUCT}.lnk" "$INSTDIR\uninstall.exe"

  ; "Applications et fonctionnalités" / "Programmes et fonctionnalités" entry, for this user.
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayName" "${PRODUCT}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "Publisher" "${PUBLISHER}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayIcon" "$INSTDIR\DesktopMate.ico"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegStr HKCU "${UNINSTALL_KEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoRepair" 1
  ${GetSize} "$INSTDIR" "/S=0K" $0 $1 $2
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "EstimatedSize" $0
SectionEnd

Section "Raccourci sur le Bureau" SecDesktop
  SetOutPath "$INSTDIR\app"
  CreateShortcut "$DESKTOP\${PRODUCT}.lnk" "$INSTDIR\python\pythonw.exe" "-m tray_app" \
    "$INSTDIR\DesktopMate.ico" 0 SW_SHOWNORMAL "" "Héberge le modèle de langue de votre avatar"
SectionEnd

Section "Lancer au démarrage de Windows" SecAutostart
  WriteRegStr HKCU "${RUN_KEY}" "${RUN_VALUE}" '"$INSTDIR\python\pythonw.exe" -m tray_app'
SectionEnd

; An update where the user unticked a component removes what the previous installation had made.
Section "-cleanup unselected components"
  ${IfNot} ${SectionIsSelected} ${SecDesktop}
    Delete "$DESKTOP\${PRODUCT}.lnk"
  ${EndIf}
  ${IfNot} ${SectionIsSelected} ${SecAutostart}
    DeleteRegValue HKCU "${RUN_KEY}" "${RUN_VALUE}"
  ${EndIf}
SectionEnd

!insertmacro MUI_FUNCTION_DESCRIPTION_BEGIN
  !insertmacro MUI_DESCRIPTION_TEXT ${SecMain} "Le programme, Python et un petit modèle de démonstration, pour essayer tout de suite."
  !insertmacro MUI_DESCRIPTION_TEXT ${SecDesktop} "Une icône ${PRODUCT} sur le Bureau."
  !insertmacro MUI_DESCRIPTION_TEXT ${SecAutostart} "${PRODUCT} démarre avec Windows, discrètement près de l'horloge. Le modèle ne se charge qu'à la première question."
!insertmacro MUI_FUNCTION_DESCRIPTION_END

Function .onInit
  SetRegView 64               ; no-op for the amd64 installer; a 32-bit one must not use WOW64's view
  ${IfNot} ${RunningX64}
    MessageBox MB_ICONSTOP "${PRODUCT} demande un Windows 64 bits." /SD IDOK
    Abort
  ${EndIf}
  ${IfNot} ${AtLeastWin10}
    MessageBox MB_ICONSTOP "${PRODUCT} demande Windows 10 ou Windows 11." /SD IDOK
    Abort
  ${EndIf}
  ; Qt 6.11 runs on Windows 10 1809 (build 17763) and later, and uses the icuuc.dll that Windows has
  ; in System32 since 1703: an older Windows 10 would install a tray that cannot start.
  ${IfNot} ${AtLeastBuild} 17763
    MessageBox MB_ICONSTOP "${PRODUCT} demande Windows 10 version 1809 ou plus récente, ou Windows 11. \
      Installez les mises à jour de Windows (Paramètres, Windows Update), puis relancez l'installation." /SD IDOK
    Abort
  ${EndIf}
  ${GetParameters} $R0
  ClearErrors
  ${GetOptions} $R0 "/NODESKTOP" $R1
  ${IfNot} ${Errors}
    !insertmacro UnselectSection ${SecDesktop}
  ${EndIf}
  ClearErrors
  ${GetOptions} $R0 "/NOAUTOSTART" $R1
  ${IfNot} ${Errors}
    !insertmacro UnselectSection ${SecAutostart}
  ${EndIf}
FunctionEnd

; ---- uninstallation -------------------------------------------------------------------------------------

Var PurgeData          ; 1: also delete the user's settings, models list and logs
Var PurgeCheckbox

Function un.onInit
  SetRegView 64
  StrCpy $PurgeData 0
  ${GetParameters} $R0
  ClearErrors
  ${GetOptions} $R0 "/PURGE" $R1
  ${IfNot} ${Errors}
    StrCpy $PurgeData 1
  ${EndIf}
FunctionEnd

; "Keep my settings?" — the box is unticked: keeping is the safe answer (a reinstall finds everything).
Function un.KeepDataPage
  !insertmacro MUI_HEADER_TEXT "Vos réglages" "Garder ou supprimer vos réglages et votre liste de modèles"
  nsDialogs::Create 1018
  Pop $0
  ${NSD_CreateLabel} 0 0 100% 60u "Vos réglages, votre liste de modèles et les journaux de ${PRODUCT} sont \
conservés, pour le cas où vous le réinstalleriez.$\r$\n$\r$\nLes fichiers de modèles que vous avez ajoutés \
ailleurs sur votre ordinateur ne sont jamais supprimés."
  Pop $0
  ${NSD_CreateCheckbox} 0 70u 100% 12u "Supprimer aussi mes réglages, ma liste de modèles et les journaux"
  Pop $PurgeCheckbox
  ${If} $PurgeData == 1
    ${NSD_Check} $PurgeCheckbox
  ${EndIf}
  nsDialogs::Show
FunctionEnd

Function un.KeepDataLeave
  ${NSD_GetState} $PurgeCheckbox $0
  ${If} $0 == ${BST_CHECKED}
    StrCpy $PurgeData 1
  ${Else}
    StrCpy $PurgeData 0
  ${EndIf}
FunctionEnd

Section "Uninstall"
  !insertmacro CLOSE_RUNNING_COPIES

  DeleteRegValue HKCU "${RUN_KEY}" "${RUN_VALUE}"   ; start with Windows (the value name is ours)
  Delete "$DESKTOP\${PRODUCT}.lnk"
  Delete "$SMPROGRAMS\${PRODUCT}.lnk"
  RMDir /r "$SMPROGRAMS\${PRODUCT} - outils"

  ; Our files only: $INSTDIR itself is removed only when nothing else is left in it.
  RMDir /r "$INSTDIR\python"
  RMDir /r "$INSTDIR\app"
  Delete "$INSTDIR\DesktopMate.ico"
  Delete "$INSTDIR\desktop-mate-tray.cmd"
  Delete "$INSTDIR\uninstall.exe"
  RMDir "$INSTDIR"
  DeleteRegKey HKCU "${UNINSTALL_KEY}"

  ${If} $PurgeData == 1
    ; platformdirs: user_config_dir(roaming) and user_data_dir/user_log_dir/user_cache_dir (local)
    RMDir /r "$APPDATA\${APP_AUTHOR}\${APP_NAME}"
    RMDir "$APPDATA\${APP_AUTHOR}"
    RMDir /r "$LOCALAPPDATA\${APP_AUTHOR}\${APP_NAME}"
    RMDir "$LOCALAPPDATA\${APP_AUTHOR}"
  ${EndIf}
SectionEnd
